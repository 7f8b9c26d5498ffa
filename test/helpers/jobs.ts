import { wrapKeyMaterial } from '../../src/domain/client-wrap.js';
import type { CallApi } from './sdk.js';

/** Bounded polling: re-checks every `everyMs` until `check` holds, failing after `timeoutMs` (no fixed sleeps). */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** GetParametersForImport + ImportKeyMaterial, as a BYOK user does it (seed 000). Returns the import parameters. */
export async function importMaterial(call: CallApi, keyId: string, material: Buffer, expireUnix?: number): Promise<Record<string, any>> {
  const params = await call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
  const encrypted = wrapKeyMaterial(Buffer.from(params.PublicKey, 'base64'), 'RSAES_OAEP_SHA_256', material).toString('base64');
  await call('ImportKeyMaterial', {
    KeyId: keyId,
    EncryptedKeyMaterial: encrypted,
    ImportToken: params.ImportToken,
    ...(expireUnix !== undefined ? { KeyMaterialExpireUnix: expireUnix } : {}),
  });
  return params;
}
