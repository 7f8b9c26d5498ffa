import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * The password of the quickstart's own services (embedded Postgres, private Redis). Both
 * listen on loopback, but any local user could otherwise reach them: the database runs as
 * superuser (`UPDATE access_keys SET role='admin'`) and Redis holds the replay nonces
 * (issue 13, section 2). Generated once, kept in a 0600 file in the 0700 data dir, never
 * logged; the URLs in `runtime.json` (0600) carry it so CLI verbs can attach.
 */
export const localServicesSecretFile = (dataDir: string) => path.join(dataDir, 'local-services.secret');

/** 32 random bytes, hex: URL-safe, no quoting needed in a redis.conf or a connection URL. */
const SECRET_PATTERN = /^[0-9a-f]{64}$/;

/** Reads the secret, creating it on first start. */
export async function loadOrCreateLocalServicesSecret(dataDir: string): Promise<string> {
  const file = localServicesSecretFile(dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    // 'wx': two processes starting at once must not each write their own secret.
    await writeFile(file, `${randomBytes(32).toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'EEXIST') throw error;
  }
  // Someone may have loosened it; the file is ours to keep private.
  await chmod(file, 0o600);
  const secret = (await readFile(file, 'utf8')).trim();
  if (!SECRET_PATTERN.test(secret)) {
    throw new Error(`${file} is not a secret this service wrote (64 hex digits expected); remove it to have a new one generated.`);
  }
  return secret;
}
