import { describe, expect, it } from 'vitest';
import { isAliasReference, validateAliasName } from '../../src/domain/alias.js';

describe('validateAliasName', () => {
  const valid = ['alias/a', 'alias/my-key_1', 'alias/team/app/key', 'alias/ac', 'alias/AC', 'alias/ac-s', 'alias/-', `alias/${'x'.repeat(249)}`];
  it.each(valid)('accepts %s', (name) => {
    expect(() => validateAliasName(name)).not.toThrow();
  });

  const invalid: Array<[string, string]> = [
    ['', 'start with'],
    ['my-key', 'start with'],
    ['Alias/x', 'start with'],
    ['alias', 'start with'],
    ['alias/', 'at least one character'],
    ['alias/has space', 'only letters'],
    ['alias/dot.name', 'only letters'],
    ['alias/ünï', 'only letters'],
    ['alias/acs', 'reserved'],
    ['alias/acs/rds', 'reserved'],
    ['alias/acsfoo', 'reserved'],
    // Issue 13: names are case-insensitive, so is the reserved prefix.
    ['alias/ACS', 'reserved'],
    ['alias/ACS-x', 'reserved'],
    ['alias/Acs/rds', 'reserved'],
    [`alias/${'x'.repeat(250)}`, 'at most 255'],
  ];
  it.each(invalid)('rejects %j (%s)', (name, why) => {
    expect(() => validateAliasName(name)).toThrow(
      expect.objectContaining({ code: 'InvalidParameter', message: expect.stringContaining(why) }),
    );
    expect(() => validateAliasName(name)).toThrow('"AliasName"');
  });
});

describe('isAliasReference', () => {
  const cases: Array<[string, boolean]> = [
    ['alias/x', true],
    ['acs:kms:cn-hangzhou:123456:alias/x', true],
    ['acs:kms:cn-hangzhou:123456:key/key-hzz123', false],
    ['key-hzz123', false],
    ['86a9efd9-3d16-4894-bd4f-1fc43f3f2abf', false],
    ['aliasx', false],
    ['', false],
  ];
  it.each(cases)('%s → %s', (s, expected) => {
    expect(isAliasReference(s)).toBe(expected);
  });
});
