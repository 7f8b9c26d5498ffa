import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 15, envelope encryption from a shell: `kms data-key`, `kms encrypt | decrypt` on files
 * and stdin (raw bytes or --base64), `kms re-encrypt`, `kms random`, spawned as a user runs them.
 */
const BIN = path.resolve('bin/kms.mjs');
const SLOW = { timeout: 240_000 };

let server: TestServer;
let call: CallApi;
let dir: string;
let hsmKey: string;
let softwareKey: string;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  dir = await mkdtemp(path.join(tmpdir(), 'kms-envelope-'));
  hsmKey = (await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId })).KeyMetadata.KeyId;
  softwareKey = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId;
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
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KMS_') && !k.startsWith('ALIBABA_CLOUD_')));
  const child = spawn(process.execPath, [BIN, ...args], {
    env: {
      ...base,
      KMS_DATA_DIR: dir,
      KMS_ENDPOINT: server.endpoint,
      KMS_ACCESS_KEY_ID: server.admin.accessKeyId,
      KMS_ACCESS_KEY_SECRET: server.admin.accessKeySecret,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
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

const json = (r: Result) => JSON.parse(r.stdout.toString('utf8')) as Record<string, string>;

describe('envelope encryption with the kms CLI', () => {
  it('kms data-key K > dk.json, then kms decrypt dk.json gives the data key bytes (and --base64 its Plaintext)', SLOW, async () => {
    const generated = await kms(['data-key', hsmKey, '--bytes', '24']);
    expect(generated.code, generated.stderr).toBe(0);
    const dk = json(generated);
    expect(Object.keys(dk).sort()).toEqual(['CiphertextBlob', 'KeyId', 'KeyVersionId', 'Plaintext', 'RequestId']);
    const file = path.join(dir, 'dk.json');
    await writeFile(file, generated.stdout);

    const raw = await kms(['decrypt', file]);
    expect(raw.code, raw.stderr).toBe(0);
    expect(raw.stdout).toEqual(Buffer.from(dk.Plaintext!, 'base64'));
    expect(raw.stdout.length).toBe(24);

    const text = await kms(['decrypt', '--base64', dk.CiphertextBlob!]);
    expect(text.stdout.toString('utf8')).toBe(`${dk.Plaintext}\n`);

    const without = json(await kms(['data-key', softwareKey, '--without-plaintext']));
    expect(without.Plaintext).toBeUndefined();
    expect((await kms(['decrypt', without.CiphertextBlob!])).stdout.length).toBe(32);
  });

  it('kms encrypt FILE and kms decrypt from stdin round-trip arbitrary bytes with a context; a wrong context exits 1', SLOW, async () => {
    const secret = Buffer.concat([randomBytes(300), Buffer.from([0, 255, 10, 13])]);
    const file = path.join(dir, 'secret.bin');
    await writeFile(file, secret);
    const context = '{"app":"cli"}';
    const encrypted = await kms(['encrypt', softwareKey, file, '--context', context]);
    expect(encrypted.code, encrypted.stderr).toBe(0);
    expect(json(encrypted).KeyId).toBe(softwareKey);

    const decrypted = await kms(['decrypt', '--context', context], encrypted.stdout);
    expect(decrypted.code, decrypted.stderr).toBe(0);
    expect(decrypted.stdout).toEqual(secret);

    const wrong = await kms(['decrypt', '-', '--context', '{"app":"other"}'], encrypted.stdout);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^InvalidCiphertext: /);
    expect(wrong.stdout.length).toBe(0);

    // stdin in, and --base64 on the way in: a data key's Plaintext re-encrypted as it is.
    const fromStdin = await kms(['encrypt', hsmKey, '--base64'], 'aGVsbG8=\n');
    expect((await call('Decrypt', { CiphertextBlob: json(fromStdin).CiphertextBlob })).Plaintext).toBe('aGVsbG8=');
  });

  it('kms re-encrypt BLOB --to KEY moves a ciphertext between tiers', SLOW, async () => {
    const blob = (await call('Encrypt', { KeyId: hsmKey, Plaintext: Buffer.from('moved').toString('base64'), EncryptionContext: '{"a":"1"}' })).CiphertextBlob as string;
    const moved = await kms(['re-encrypt', blob, '--to', softwareKey, '--source-context', '{"a":"1"}', '--context', '{"b":"2"}']);
    expect(moved.code, moved.stderr).toBe(0);
    expect(json(moved).KeyId).toBe(softwareKey);
    const back = await kms(['decrypt', '--context', '{"b":"2"}'], moved.stdout);
    expect(back.stdout.toString()).toBe('moved');
  });

  it("README's shell example: kms data-key, openssl with the key, kms decrypt of the blob, kms re-encrypt", SLOW, async () => {
    const suffix = Date.now().toString(36);
    await call('CreateAlias', { AliasName: `alias/orders-${suffix}`, KeyId: hsmKey });
    await call('CreateAlias', { AliasName: `alias/archive-${suffix}`, KeyId: softwareKey });
    const work = await mkdtemp(path.join(dir, 'readme-'));
    await writeFile(path.join(work, 'orders.csv'), 'id,total\n42,19.99\n');
    const script = [
      'set -euo pipefail',
      `kms() { "${process.execPath}" "${BIN}" "$@"; }`,
      `kms data-key alias/orders-${suffix} > dk.json`,
      'iv=$(openssl rand -hex 16)',
      'openssl enc -aes-256-cbc -K "$(jq -r .Plaintext dk.json | base64 -d | xxd -p -c 64)" -iv "$iv" -in orders.csv -out orders.enc',
      'jq -r .CiphertextBlob dk.json > dk.blob && rm dk.json',
      'openssl enc -d -aes-256-cbc -K "$(kms decrypt dk.blob | xxd -p -c 64)" -iv "$iv" -in orders.enc',
      `kms re-encrypt dk.blob --to alias/archive-${suffix} > dk2.json`,
      'openssl enc -d -aes-256-cbc -K "$(kms decrypt dk2.json | xxd -p -c 64)" -iv "$iv" -in orders.enc',
    ].join('\n');
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KMS_')));
    const child = spawn('bash', ['-c', script], {
      cwd: work,
      env: { ...base, KMS_DATA_DIR: dir, KMS_ENDPOINT: server.endpoint, KMS_ACCESS_KEY_ID: server.admin.accessKeyId, KMS_ACCESS_KEY_SECRET: server.admin.accessKeySecret },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
    expect(code, Buffer.concat(err).toString()).toBe(0);
    expect(Buffer.concat(out).toString()).toBe('id,total\n42,19.99\n'.repeat(2));
  });

  it('kms random prints a password from GetRandomPassword', SLOW, async () => {
    const r = await kms(['random', '--length', '12', '--no-punctuation']);
    expect(r.code, r.stderr).toBe(0);
    expect(json(r).RandomPassword).toMatch(/^[A-Za-z0-9]{12}$/);
    const bad = await kms(['random', '--length', '7']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^InvalidParameter: .*PasswordLength/);
  });
});
