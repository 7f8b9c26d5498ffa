import { execFile, spawn } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getVersion } from '../../src/store/versions.js';
import { createKeyIn } from '../helpers/fixtures.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 15, signatures and MACs from a shell: `kms public-key | sign | verify | mac`, spawned
 * as a user runs them, and the README's pipeline verbatim —
 * `kms public-key K --version V > pub.pem && kms sign K --version V msg.txt > sig.bin &&
 * openssl dgst -sha256 -verify pub.pem -signature sig.bin msg.txt` — through `sh`.
 */
const BIN = path.resolve('bin/kms.mjs');
const SLOW = { timeout: 240_000 };
const sh = promisify(execFile);

let server: TestServer;
let call: CallApi;
let dir: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  dir = await mkdtemp(path.join(tmpdir(), 'kms-signing-'));
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KMS_') && !k.startsWith('ALIBABA_CLOUD_')));
  // A `kms` on PATH, as an installed CLI would be, so the shell line is the documented one.
  const binDir = path.join(dir, 'bin');
  await mkdir(binDir);
  await writeFile(path.join(binDir, 'kms'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`);
  await chmod(path.join(binDir, 'kms'), 0o755);
  env = {
    ...base,
    PATH: `${binDir}:${process.env.PATH ?? ''}`,
    KMS_DATA_DIR: dir,
    KMS_ENDPOINT: server.endpoint,
    KMS_ACCESS_KEY_ID: server.admin.accessKeyId,
    KMS_ACCESS_KEY_SECRET: server.admin.accessKeySecret,
  };
});

afterAll(async () => {
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Result {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** `node bin/kms.mjs …` as the admin, with `stdin` piped in (an empty pipe when absent). */
function kms(args: string[], stdin?: Buffer | string): Promise<Result> {
  const child = spawn(process.execPath, [BIN, ...args], { env, cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  child.stdin.end(stdin ?? '');
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** A shell line run in the test's directory; resolves with stdout, rejects on a non-zero exit. */
async function shell(line: string): Promise<{ stdout: string; stderr: string }> {
  return sh('sh', ['-c', line], { env, cwd: dir });
}

const createKey = (instanceId: string, KeySpec: string, KeyUsage?: string) => createKeyIn(call, instanceId, { KeySpec, ...(KeyUsage ? { KeyUsage } : {}) });

describe('kms public-key | sign | verify', () => {
  const PIPELINE_CASES = [
    { name: 'RSA PKCS#1 (HSM tier)', tier: 'hsm', spec: 'RSA_2048' },
    { name: 'ECDSA P-256 (SOFTWARE tier)', tier: 'software', spec: 'EC_P256' },
  ] as const;

  it.each(PIPELINE_CASES)('$name: the shell pipeline signs what openssl dgst -verify accepts', SLOW, async ({ tier, spec }) => {
    const key = await createKey(tier === 'hsm' ? server.hsmInstanceId : server.softwareInstanceId, spec, 'SIGN/VERIFY');
    await writeFile(path.join(dir, 'msg.txt'), `hello from a shell ${randomBytes(8).toString('hex')}\n`);
    const K = key.keyId;
    const V = key.versionId;
    const { stdout } = await shell(
      `kms public-key ${K} --version ${V} > pub.pem && kms sign ${K} --version ${V} msg.txt > sig.bin && openssl dgst -sha256 -verify pub.pem -signature sig.bin msg.txt`,
    );
    expect(stdout).toContain('Verified OK');
    expect((await readFile(path.join(dir, 'pub.pem'), 'utf8')).startsWith('-----BEGIN PUBLIC KEY-----')).toBe(true);

    // The same signature checks with kms verify; a changed message does not (exit 1).
    const verified = await kms(['verify', K, '--version', V, '--signature', 'sig.bin', 'msg.txt']);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout.toString()).toBe('Verified OK\n');
    await writeFile(path.join(dir, 'other.txt'), 'another message\n');
    const refused = await kms(['verify', K, '--version', V, '--signature', 'sig.bin', 'other.txt']);
    expect(refused.code).toBe(1);
    expect(refused.stdout.toString()).toBe('Verification failure\n');
    // openssl agrees that it fails.
    await expect(shell('openssl dgst -sha256 -verify pub.pem -signature sig.bin other.txt')).rejects.toThrow();
  });

  it('stdin message, --digest-file, --base64 and RSA-PSS with --algorithm', SLOW, async () => {
    const key = await createKey(server.hsmInstanceId, 'RSA_3072', 'SIGN/VERIFY');
    const message = randomBytes(1000);
    await writeFile(path.join(dir, 'm.bin'), message);
    expect((await kms(['public-key', key.keyId, '--version', key.versionId])).code).toBe(0);
    await writeFile(path.join(dir, 'pub3072.pem'), (await kms(['public-key', key.keyId, '--version', key.versionId])).stdout);

    // PSS over stdin, base64 out.
    const pss = await kms(['sign', key.keyId, '--version', key.versionId, '--algorithm', 'RSA_PSS_SHA_256', '--base64'], message);
    expect(pss.code, pss.stderr).toBe(0);
    const pssSignature = Buffer.from(pss.stdout.toString().trim(), 'base64');
    expect(pssSignature).toHaveLength(384);
    await writeFile(path.join(dir, 'pss.sig'), pssSignature);
    const { stdout } = await shell('openssl dgst -sha256 -verify pub3072.pem -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -signature pss.sig m.bin');
    expect(stdout).toContain('Verified OK');

    // A precomputed digest (base64 text with --base64) signs the same message; kms verify over the file agrees.
    await writeFile(path.join(dir, 'd.b64'), `${createHash('sha256').update(message).digest('base64')}\n`);
    const byDigest = await kms(['sign', key.keyId, '--version', key.versionId, '--digest-file', 'd.b64', '--base64']);
    expect(byDigest.code, byDigest.stderr).toBe(0);
    await writeFile(path.join(dir, 'pkcs1.b64'), byDigest.stdout);
    const check = await kms(['verify', key.keyId, '--version', key.versionId, '--signature', 'pkcs1.b64', '--base64', 'm.bin']);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout.toString()).toBe('Verified OK\n');

    // Mistakes are said plainly: a digest of the wrong size, a refusal from the API (exit 1).
    await writeFile(path.join(dir, 'short.bin'), Buffer.alloc(20));
    const short = await kms(['sign', key.keyId, '--version', key.versionId, '--digest-file', 'short.bin']);
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/32-byte SHA-256 digest/);
    const wrong = await kms(['sign', key.keyId, '--version', key.versionId, '--algorithm', 'ECDSA_SHA_256', 'm.bin']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^InvalidParameter: /);
  });
});

describe('kms mac', () => {
  it.each(['hsm', 'software'] as const)('%s tier: a MAC round trip from files and stdin; a wrong MAC fails (exit 1)', SLOW, async (tier) => {
    const key = await createKey(tier === 'hsm' ? server.hsmInstanceId : server.softwareInstanceId, 'HMAC_SHA256');
    const message = randomBytes(500);
    await writeFile(path.join(dir, `${tier}.msg`), message);

    const made = await kms(['mac', key.keyId, `${tier}.msg`]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toHaveLength(32);
    await writeFile(path.join(dir, `${tier}.mac`), made.stdout);

    const verified = await kms(['mac', key.keyId, '--verify', `${tier}.mac`], message);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout.toString()).toBe('Verified OK\n');

    const b64 = await kms(['mac', key.keyId, '--base64', '--algorithm', 'HMAC_SHA_256'], message);
    expect(b64.stdout.toString()).toBe(`${made.stdout.toString('base64')}\n`);

    const flipped = Buffer.from(made.stdout);
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    await writeFile(path.join(dir, `${tier}.bad`), flipped);
    const refused = await kms(['mac', key.keyId, `${tier}.msg`, '--verify', `${tier}.bad`]);
    expect(refused.code).toBe(1);
    expect(refused.stdout.toString()).toBe('Verification failure\n');

    if (tier === 'software') {
      // The bytes really are HMAC-SHA-256 of the file, under the version's (test-unsealed) material.
      const version = await getVersion(server.kms.deps.db, key.versionId);
      const material = await server.kms.deps.hsm.unsealWithRootKey(version!.sealedMaterial!, Buffer.from(key.versionId));
      expect(made.stdout.equals(createHmac('sha256', material).update(message).digest())).toBe(true);
    }
  });

  it('the algorithm follows the spec; a non-MAC key is refused by the API', SLOW, async () => {
    const key = await createKey(server.softwareInstanceId, 'HMAC_SHA512');
    const made = await kms(['mac', key.keyId], 'x');
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toHaveLength(64);
    const aes = await createKey(server.softwareInstanceId, 'Aliyun_AES_256');
    const refused = await kms(['mac', aes.keyId, '--algorithm', 'HMAC_SHA_256'], 'x');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^Rejected.UnsupportedOperation: /);
    const noDefault = await kms(['mac', aes.keyId], 'x');
    expect(noDefault.code).toBe(1);
    expect(noDefault.stderr).toMatch(/pass --algorithm/);
  });
});
