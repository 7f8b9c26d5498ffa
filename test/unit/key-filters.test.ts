import { describe, expect, it } from 'vitest';
import { KmsError } from '../../src/domain/errors.js';
import { parseKeyFilters } from '../../src/domain/key-filters.js';

const f = (filters: unknown) => parseKeyFilters(JSON.stringify(filters));
const refusal = (json: string) => {
  try {
    parseKeyFilters(json);
  } catch (e) {
    if (e instanceof KmsError) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'accepted';
};

describe('parseKeyFilters (ListKeys Filters, alibaba-api.md §3.1)', () => {
  it('maps every supported key, de-duplicating values', () => {
    expect(
      f([
        { Key: 'KeyState', Values: ['Enabled', 'Disabled', 'Enabled'] },
        { Key: 'KeySpec', Values: ['Aliyun_AES_256'] },
        { Key: 'KeyUsage', Values: ['ENCRYPT/DECRYPT'] },
        { Key: 'ProtectionLevel', Values: ['HSM'] },
        { Key: 'DKMSInstanceId', Values: ['kst-a'] },
        { Key: 'CreatorType', Values: ['User'] },
      ]),
    ).toEqual({
      states: ['Enabled', 'Disabled'],
      specs: ['Aliyun_AES_256'],
      usages: ['ENCRYPT/DECRYPT'],
      protectionLevels: ['HSM'],
      instanceIds: ['kst-a'],
      creatorTypes: ['User'],
    });
  });

  it('treats an empty string or empty array as no filter', () => {
    expect(parseKeyFilters('')).toEqual({});
    expect(f([])).toEqual({});
  });

  it('accepts specs Alibaba documents even if this service cannot create them', () => {
    expect(f([{ Key: 'KeySpec', Values: ['RSA_2048', 'EC_SM2'] }])).toEqual({ specs: ['RSA_2048', 'EC_SM2'] });
  });

  it.each([
    ['not JSON', 'KeyState=Enabled'],
    ['not an array', JSON.stringify({ Key: 'KeyState', Values: ['Enabled'] })],
    ['item not an object', JSON.stringify(['KeyState'])],
    ['unknown key', JSON.stringify([{ Key: 'Color', Values: ['red'] }])],
    ['key in the wrong case', JSON.stringify([{ Key: 'keystate', Values: ['Enabled'] }])],
    ['value in the wrong case', JSON.stringify([{ Key: 'KeyState', Values: ['enabled'] }])],
    ['unknown spec', JSON.stringify([{ Key: 'KeySpec', Values: ['AES_256'] }])],
    ['no values', JSON.stringify([{ Key: 'KeyState', Values: [] }])],
    ['values not a list', JSON.stringify([{ Key: 'KeyState', Values: 'Enabled' }])],
    ['non-string value', JSON.stringify([{ Key: 'KeyState', Values: [1] }])],
    ['11 values', JSON.stringify([{ Key: 'DKMSInstanceId', Values: Array.from({ length: 11 }, (_, i) => `kst-${i}`) }])],
    ['repeated key', JSON.stringify([{ Key: 'KeyState', Values: ['Enabled'] }, { Key: 'KeyState', Values: ['Disabled'] }])],
    ['empty instance id', JSON.stringify([{ Key: 'DKMSInstanceId', Values: [''] }])],
    ['11 filters', JSON.stringify(Array.from({ length: 11 }, () => ({ Key: 'KeyState', Values: ['Enabled'] })))],
  ])('refuses %s with InvalidParameter(Filters)', (_name, json) => {
    expect(refusal(json)).toMatch(/^InvalidParameter: The specified parameter "Filters" is not valid\. .+/);
  });
});
