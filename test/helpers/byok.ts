import { execFile } from 'node:child_process';
import { createDecipheriv, createHash } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A fresh working directory, as a user would use for the seed's files. */
export const byokWorkDir = () => mkdtemp(path.join(tmpdir(), 'kms-byok-'));

/** Runs one shell command line verbatim in `cwd` (the seed's openssl steps are shell lines). */
export async function sh(cwd: string, commandLine: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const { stdout } = await run('sh', ['-c', commandLine], { cwd, env, maxBuffer: 4 * 1024 * 1024 });
  return stdout;
}

/**
 * Decrypts an Alibaba CiphertextBlob outside the KMS with the raw material:
 * version id (36 ASCII bytes) ‖ IV (12) ‖ ciphertext ‖ tag (16); AAD = SHA-256 of the sorted
 * `k=v&…` context, none without one (alibaba-api.md §5.9).
 */
export function decryptBlobWithMaterial(blobBase64: string, material: Buffer, context?: Record<string, string>): { versionId: string; plaintext: string } {
  const blob = Buffer.from(blobBase64, 'base64');
  const versionId = blob.subarray(0, 36).toString('ascii');
  const iv = blob.subarray(36, 48);
  const tag = blob.subarray(blob.length - 16);
  const decipher = createDecipheriv(`aes-${material.length * 8}-gcm` as 'aes-256-gcm', material, iv);
  if (context && Object.keys(context).length > 0) {
    const canonical = Object.keys(context)
      .sort()
      .map((k) => `${k}=${context[k]}`)
      .join('&');
    decipher.setAAD(createHash('sha256').update(canonical).digest());
  }
  decipher.setAuthTag(tag);
  const plaintext = Buffer.concat([decipher.update(blob.subarray(48, blob.length - 16)), decipher.final()]).toString('utf8');
  return { versionId, plaintext };
}
