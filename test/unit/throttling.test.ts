import { describe, expect, it } from 'vitest';
import { allActions } from '../../src/api/actions/index.js';
import { isLoopback } from '../../src/api/metrics-route.js';
import { AES_GCM_RANDOM_IV_LIMIT, ENCRYPTION_COUNT_WARNING, encryptionUsageLevel, encryptionUsageWarning } from '../../src/domain/version-usage.js';
import type { Hsm } from '../../src/hsm/hsm.js';
import { timedHsm } from '../../src/observability/timed-hsm.js';
import { RATE_CLASSES, SHARED_GATEWAY_QPS, accountRateLimitTable, rateClassOf } from '../../src/services/throttling.js';

describe('rate classes (alibaba-api.md §5.11)', () => {
  it('put every served action in a class, crypto by kind', () => {
    for (const action of Object.keys(allActions)) expect(RATE_CLASSES).toContain(rateClassOf(action));
    expect(rateClassOf('Encrypt')).toBe('symmetricCrypto');
    expect(rateClassOf('GenerateDataKeyWithoutPlaintext')).toBe('symmetricCrypto');
    expect(rateClassOf('VerifyMac')).toBe('symmetricCrypto');
    expect(rateClassOf('AsymmetricSign')).toBe('asymmetricCrypto');
    expect(rateClassOf('GetPublicKey')).toBe('asymmetricCrypto');
    expect(rateClassOf('ReEncrypt')).toBe('reEncrypt');
    expect(rateClassOf('CreateKey')).toBe('createKey');
    expect(rateClassOf('ListResourceTags')).toBe('listTags');
    expect(rateClassOf('DescribeKey')).toBe('read');
    expect(rateClassOf('GetKmsInstanceQuotaInfos')).toBe('read');
    expect(rateClassOf('CreateAlias')).toBe('write');
    expect(rateClassOf('ScheduleKeyDeletion')).toBe('write');
  });

  it('default to Alibaba\'s figures, each settable on its own', () => {
    expect(accountRateLimitTable({})).toEqual(SHARED_GATEWAY_QPS);
    expect(SHARED_GATEWAY_QPS).toMatchObject({ symmetricCrypto: 1000, asymmetricCrypto: 200, createKey: 10, read: 50, write: 30 });
    expect(accountRateLimitTable({ createKey: 3, read: undefined })).toEqual({ ...SHARED_GATEWAY_QPS, createKey: 3 });
  });
});

describe('usage per key version (NIST SP 800-38D random-IV bound)', () => {
  it('warns from 2^31 encryptions and says the bound is reached at 2^32', () => {
    expect(ENCRYPTION_COUNT_WARNING).toBe(2147483648);
    expect(AES_GCM_RANDOM_IV_LIMIT).toBe(4294967296);
    expect(encryptionUsageLevel(0)).toBe('ok');
    expect(encryptionUsageLevel(2 ** 31 - 1)).toBe('ok');
    expect(encryptionUsageWarning(2 ** 31 - 1)).toBeUndefined();
    expect(encryptionUsageLevel(2 ** 31)).toBe('rotate');
    expect(encryptionUsageLevel(2 ** 32 - 1)).toBe('rotate');
    expect(encryptionUsageLevel(2 ** 32)).toBe('exhausted');
    expect(encryptionUsageWarning(2 ** 32)).toMatch(/reached/);
  });
});

describe('metrics access', () => {
  it('treats 127.0.0.0/8 and ::1 (also IPv4-mapped) as loopback, nothing else', () => {
    for (const address of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) expect(isLoopback(address)).toBe(true);
    for (const address of [undefined, '', '10.0.0.1', '192.0.2.2', '::ffff:10.0.0.1', 'fe80::1', '::127.0.0.1']) expect(isLoopback(address)).toBe(false);
  });
});

describe('timedHsm', () => {
  it('times every asynchronous port call by method name, failures too, and passes synchronous ones through', async () => {
    const seen: Array<[string, boolean]> = [];
    // Only the methods this test calls: the decorator is generic over the port.
    const port = {
      sessionStats: () => ({ size: 1, open: 1, inUse: 0, waiting: 0 }),
      randomBytes: async (n: number) => Buffer.alloc(n, 7),
      fingerprintVersionKey: async () => {
        throw new Error('no such key');
      },
    } as unknown as Hsm;
    const timed = timedHsm(port, (operation, seconds, failed) => {
      expect(seconds).toBeGreaterThanOrEqual(0);
      seen.push([operation, failed]);
    });
    expect(timed.sessionStats()).toEqual({ size: 1, open: 1, inUse: 0, waiting: 0 });
    expect(await timed.randomBytes(3)).toEqual(Buffer.alloc(3, 7));
    await expect(timed.fingerprintVersionKey('v')).rejects.toThrow('no such key');
    expect(seen).toEqual([
      ['randomBytes', false],
      ['fingerprintVersionKey', true],
    ]);
  });
});
