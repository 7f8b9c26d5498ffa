import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PUNCTUATION } from '../../src/domain/random-password.js';
import { KMS, type CallApi, legacyClient, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 15, GetRandomPassword through SDK 1.2.0 (its request names: PasswordLength,
 * ExcludeCharacters, Exclude*, RequireEachIncludedType; answer {RandomPassword}).
 */
let server: TestServer;
let call: CallApi;
let legacy: ReturnType<typeof legacyClient>;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  legacy = legacyClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

const LOWER = /[a-z]/;
const UPPER = /[A-Z]/;
const DIGIT = /[0-9]/;
const punct = (s: string) => [...s].some((c) => PUNCTUATION.includes(c));

async function samples(request: Record<string, string>, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    out.push((await legacy.getRandomPassword(new KMS.GetRandomPasswordRequest(request))).randomPassword);
  }
  return out;
}

describe('GetRandomPassword', () => {
  it('default: 32 printable characters holding every type, each sample different', async () => {
    const passwords = await samples({}, 100);
    for (const p of passwords) {
      expect(p).toHaveLength(32);
      expect(p).toMatch(/^[\x21-\x7e]+$/);
      expect([LOWER.test(p), UPPER.test(p), DIGIT.test(p), punct(p)]).toEqual([true, true, true, true]);
    }
    expect(new Set(passwords).size).toBe(100);
  });

  it('PasswordLength 8 and 128; every included type present in the shortest passwords too', async () => {
    for (const p of await samples({ passwordLength: '8' }, 100)) {
      expect(p).toHaveLength(8);
      expect([LOWER.test(p), UPPER.test(p), DIGIT.test(p), punct(p)]).toEqual([true, true, true, true]);
    }
    for (const p of await samples({ passwordLength: '128' }, 10)) expect(p).toHaveLength(128);
  });

  it('exclusions hold over many samples', async () => {
    for (const p of await samples({ excludePunctuation: 'true', excludeNumbers: 'true', passwordLength: '20' }, 100)) {
      expect(p).toMatch(/^[a-zA-Z]{20}$/);
      expect(LOWER.test(p) && UPPER.test(p)).toBe(true);
    }
    for (const p of await samples({ excludeLowercase: 'true', excludeUppercase: 'true', excludePunctuation: 'true' }, 50)) {
      expect(p).toMatch(/^[0-9]{32}$/);
    }
    const excluded = 'aeiouAEIOU01lI!"\'`\\';
    for (const p of await samples({ excludeCharacters: excluded, passwordLength: '64' }, 100)) {
      expect([...p].filter((c) => excluded.includes(c))).toEqual([]);
    }
  });

  it('RequireEachIncludedType=false may leave a type out; true never does (a class of one character)', async () => {
    // Numbers reduced to "7": with the requirement, every password holds a 7.
    const onlySeven = '012345689';
    for (const p of await samples({ excludeCharacters: onlySeven, passwordLength: '8', requireEachIncludedType: 'true' }, 60)) {
      expect(p).toContain('7');
    }
    const free = await samples({ excludeCharacters: onlySeven, passwordLength: '8', requireEachIncludedType: 'false' }, 60);
    expect(free.some((p) => !p.includes('7'))).toBe(true);
  });

  it('the characters come from the token RNG (Hsm.randomBytes, C_GenerateRandom)', async () => {
    const spy = vi.spyOn(server.kms.deps.hsm, 'randomBytes');
    try {
      await call('GetRandomPassword', { PasswordLength: 16 });
      expect(spy).toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  it.each([
    [{ PasswordLength: '7' }, 'PasswordLength'],
    [{ PasswordLength: '129' }, 'PasswordLength'],
    [{ PasswordLength: '0' }, 'PasswordLength'],
    [{ PasswordLength: 'junk' }, 'PasswordLength'],
    [{ ExcludeNumbers: 'maybe' }, 'ExcludeNumbers'],
    [{ ExcludeLowercase: 'true', ExcludeUppercase: 'true', ExcludeNumbers: 'true', ExcludePunctuation: 'true' }, 'ExcludeCharacters'],
    [{ ExcludeNumbers: 'true', ExcludePunctuation: 'true', ExcludeCharacters: 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ' }, 'ExcludeCharacters'],
    [{ Length: '16' }, 'Length'],
  ])('%o → 400 InvalidParameter naming %s', async (query, field) => {
    const e = await sdkError(() => call('GetRandomPassword', query));
    expect({ code: e.code, status: e.statusCode }).toEqual({ code: 'InvalidParameter', status: 400 });
    expect(e.message).toContain(field);
  });

  it('DryRun', async () => {
    expect((await sdkError(() => call('GetRandomPassword', { DryRun: true }))).code).toBe('DryRunOperationError');
    expect((await sdkError(() => call('GetRandomPassword', { DryRun: true, PasswordLength: 3 }))).code).toBe('ValidationError');
  });

  it('a key-user may call it', async () => {
    const { createAccessKey } = await import('../../src/services/access.js');
    const { systemCaller } = await import('../../src/services/context.js');
    const user = await createAccessKey(server.kms.deps, { role: 'key-user', instanceIds: [server.hsmInstanceId] }, systemCaller);
    const asUser = openApiClient(server.endpoint, { accessKeyId: user.accessKeyId, accessKeySecret: user.accessKeySecret });
    expect(((await asUser('GetRandomPassword', {})).RandomPassword as string).length).toBe(32);
  });
});
