import { describe, expect, it } from 'vitest';
import { isoSeconds } from '../../src/domain/dates.js';
import {
  aliasArn,
  keyArn,
  newInstanceId,
  newKeyId,
  newVersionId,
  parseKeyReference,
  type KeyReference,
} from '../../src/domain/ids.js';

describe('new ids', () => {
  it('key ids look like Alibaba 3.0 key ids and do not repeat', () => {
    const ids = Array.from({ length: 2000 }, newKeyId);
    for (const id of ids) expect(id).toMatch(/^key-hzz[a-z0-9]{21}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('uses the whole alphabet', () => {
    const chars = new Set(Array.from({ length: 500 }, newKeyId).flatMap((id) => [...id.slice(7)]));
    expect(chars.size).toBe(36);
  });

  it('instance ids are kst-hzz + 21 chars', () => {
    expect(newInstanceId()).toMatch(/^kst-hzz[a-z0-9]{21}$/);
  });

  it('version ids are lowercase UUIDs (36 ASCII chars)', () => {
    expect(newVersionId()).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('ARNs', () => {
  it('builds key and alias ARNs', () => {
    expect(keyArn('cn-hangzhou', '123456', 'key-hzz1')).toBe('acs:kms:cn-hangzhou:123456:key/key-hzz1');
    expect(aliasArn('cn-hangzhou', '123456', 'alias/app')).toBe('acs:kms:cn-hangzhou:123456:alias/app');
    expect(aliasArn('cn-hangzhou', '123456', 'app')).toBe('acs:kms:cn-hangzhou:123456:alias/app');
  });
});

describe('parseKeyReference', () => {
  const arn = { region: 'cn-hangzhou', account: '123456' };
  const valid: Array<[string, KeyReference]> = [
    ['key-hzz630494463ejqjx12345', { kind: 'id', keyId: 'key-hzz630494463ejqjx12345' }],
    ['86a9efd9-3d16-4894-bd4f-1fc43f3f2abf', { kind: 'id', keyId: '86a9efd9-3d16-4894-bd4f-1fc43f3f2abf' }],
    ['alias/app', { kind: 'alias', aliasName: 'alias/app' }],
    ['alias/team/app', { kind: 'alias', aliasName: 'alias/team/app' }],
    ['acs:kms:cn-hangzhou:123456:key/key-hzz1', { kind: 'id', keyId: 'key-hzz1', arn }],
    ['acs:kms:cn-hangzhou:123456:alias/app', { kind: 'alias', aliasName: 'alias/app', arn }],
    ['acs:kms:cn-hangzhou:123456:alias/team/app', { kind: 'alias', aliasName: 'alias/team/app', arn }],
  ];
  it.each(valid)('%s', (s, expected) => {
    expect(parseKeyReference(s)).toEqual(expected);
  });

  const invalid = [
    '',
    'acs:kms:cn-hangzhou:123456:key/',
    'acs:kms:cn-hangzhou:123456:key/a/b',
    'acs:kms:cn-hangzhou:123456:secret/x',
    'acs:kms::123456:key/k',
    'acs:kms:cn-hangzhou::key/k',
    'acs:ecs:cn-hangzhou:123456:key/k',
    'acs:kms:cn-hangzhou:123456',
    'k'.repeat(2049),
  ];
  it.each(invalid)('rejects %j', (s) => {
    expect(() => parseKeyReference(s)).toThrow(
      expect.objectContaining({ code: 'InvalidParameter', message: expect.stringContaining('"KeyId"') }),
    );
  });
});

describe('isoSeconds', () => {
  const cases: Array<[Date, string]> = [
    [new Date('2024-05-20T06:34:21.000Z'), '2024-05-20T06:34:21Z'],
    [new Date('2024-05-20T06:34:21.999Z'), '2024-05-20T06:34:21Z'],
    [new Date(0), '1970-01-01T00:00:00Z'],
    [new Date('2024-05-20T08:34:21+02:00'), '2024-05-20T06:34:21Z'],
  ];
  it.each(cases)('%o → %s', (d, expected) => {
    expect(isoSeconds(d)).toBe(expected);
  });
});
