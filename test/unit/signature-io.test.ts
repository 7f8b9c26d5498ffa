import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { algorithmFor, bytesOutput, digestOf, readBytesFile } from '../../src/cli/signature-io.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'signature-io-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A DescribeKey stand-in answering one KeySpec, counting its calls. */
function describing(keySpec: string) {
  const calls: string[] = [];
  const call = async (action: string) => {
    calls.push(action);
    return { KeyMetadata: { KeySpec: keySpec } };
  };
  return { call, calls };
}

describe('kms sign | verify | mac: defaults and byte handling (src/cli/signature-io.ts)', () => {
  it.each([
    ['RSA_2048', 'sign', 'RSA_PKCS1_SHA_256'],
    ['RSA_3072', 'sign', 'RSA_PKCS1_SHA_256'],
    ['EC_P256', 'sign', 'ECDSA_SHA_256'],
    ['EC_P256K', 'sign', 'ECDSA_SHA_256'],
    ['HMAC_SHA224', 'mac', 'HMAC_SHA_224'],
    ['HMAC_SHA256', 'mac', 'HMAC_SHA_256'],
    ['HMAC_SHA384', 'mac', 'HMAC_SHA_384'],
    ['HMAC_SHA512', 'mac', 'HMAC_SHA_512'],
  ] as const)('a %s key %ss with %s by default', async (spec, kind, expected) => {
    expect(await algorithmFor(describing(spec).call, 'k', undefined, kind)).toBe(expected);
  });

  it('an explicit --algorithm is used as given, without a DescribeKey call; no default is guessed', async () => {
    const d = describing('RSA_2048');
    expect(await algorithmFor(d.call, 'k', 'RSA_PSS_SHA_256', 'sign')).toBe('RSA_PSS_SHA_256');
    expect(d.calls).toEqual([]);
    await expect(algorithmFor(describing('Aliyun_AES_256').call, 'k', undefined, 'mac')).rejects.toThrow(/pass --algorithm/);
    await expect(algorithmFor(describing('HMAC_SHA256').call, 'k', undefined, 'sign')).rejects.toThrow(/pass --algorithm/);
    await expect(algorithmFor(describing('EC_SM2').call, 'k', undefined, 'sign')).rejects.toThrow(/pass --algorithm/);
  });

  it('digests: SHA-256 of the message file, or a 32-byte --digest-file (raw or base64), never both', async () => {
    const message = path.join(dir, 'm');
    await writeFile(message, 'hello');
    const expected = createHash('sha256').update('hello').digest();
    expect(await digestOf(message, undefined, false)).toEqual(expected);
    await writeFile(path.join(dir, 'd.bin'), expected);
    await writeFile(path.join(dir, 'd.b64'), `${expected.toString('base64')}\n`);
    expect(await digestOf(undefined, path.join(dir, 'd.bin'), false)).toEqual(expected);
    expect(await digestOf(undefined, path.join(dir, 'd.b64'), true)).toEqual(expected);
    await expect(digestOf(message, path.join(dir, 'd.bin'), false)).rejects.toThrow(/not both/);
    await expect(digestOf(undefined, path.join(dir, 'd.b64'), false)).rejects.toThrow(/32-byte/);
  });

  it('--base64 files must be base64 text; output is raw bytes, or base64 and a newline', async () => {
    await writeFile(path.join(dir, 'bad'), 'not base64!');
    await expect(readBytesFile(path.join(dir, 'bad'), true, 'signature')).rejects.toThrow(/signature file is not base64/);
    expect(bytesOutput(Buffer.from([1, 2, 3]), false)).toEqual(Buffer.from([1, 2, 3]));
    expect(bytesOutput(Buffer.from([1, 2, 3]), true).toString()).toBe('AQID\n');
  });
});
