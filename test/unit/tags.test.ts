import { describe, expect, it } from 'vitest';
import { MAX_TAGS_PER_KEY, parseTagKeys, parseTags, validateTag } from '../../src/domain/tags.js';

const tags = (n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => ({ TagKey: `k${i}`, TagValue: 'v' })));

describe('validateTag', () => {
  const valid: Array<[string, string]> = [
    ['env', 'prod'],
    ['k', ''],
    ['a b/c\\d_e-f.g+h=i:j@k', 'a b/c\\d_e-f.g+h=i:j@k'],
    ['部门', '研发'],
    ['x'.repeat(128), 'y'.repeat(128)],
    ['myaliyun', 'aliyun'],
    ['acs', 'v'],
  ];
  it.each(valid)('accepts %j=%j', (k, v) => {
    expect(() => validateTag(k, v)).not.toThrow();
  });

  const invalid: Array<[string, string, string]> = [
    ['', 'v', '1 to 128'],
    ['x'.repeat(129), 'v', '1 to 128'],
    ['k', 'y'.repeat(129), 'at most 128'],
    ['k#', 'v', 'only letters'],
    ['k', 'v!', 'only letters'],
    ['k\n', 'v', 'only letters'],
    ['aliyun', 'v', 'must not start'],
    ['AliYun-x', 'v', 'must not start'],
    ['acs:foo', 'v', 'must not start'],
    ['ACS:foo', 'v', 'must not start'],
  ];
  it.each(invalid)('rejects %j=%j (%s)', (k, v, why) => {
    expect(() => validateTag(k, v)).toThrow(
      expect.objectContaining({ code: 'InvalidParameter', message: expect.stringContaining(why) }),
    );
  });
});

describe('parseTags', () => {
  it('parses the CreateKey/TagResource shape', () => {
    expect(parseTags('[{"TagKey":"env","TagValue":"prod"},{"TagKey":"team"}]')).toEqual([
      { key: 'env', value: 'prod' },
      { key: 'team', value: '' },
    ]);
    expect(parseTags('[]')).toEqual([]);
    expect(parseTags(tags(MAX_TAGS_PER_KEY))).toHaveLength(20);
  });

  const invalid: Array<[string, string]> = [
    ['not json', 'JSON array'],
    ['{"TagKey":"k"}', 'JSON array'],
    ['["k"]', 'object'],
    ['[null]', 'object'],
    ['[{"TagValue":"v"}]', 'strings'],
    ['[{"TagKey":1,"TagValue":"v"}]', 'strings'],
    ['[{"TagKey":"k","TagValue":2}]', 'strings'],
    ['[{"TagKey":"k","TagValue":"a"},{"TagKey":"k","TagValue":"b"}]', 'repeated'],
    ['[{"TagKey":"aliyun:x","TagValue":"v"}]', 'must not start'],
    [tags(21), 'At most 20'],
  ];
  it.each(invalid)('rejects %s', (json, why) => {
    expect(() => parseTags(json)).toThrow(
      expect.objectContaining({ code: 'InvalidParameter', message: expect.stringContaining('"Tags"') }),
    );
    expect(() => parseTags(json)).toThrow(why);
  });
});

describe('parseTagKeys', () => {
  it('parses a JSON array of keys, collapsing duplicates', () => {
    expect(parseTagKeys('["a","b","a"]')).toEqual(['a', 'b']);
    expect(parseTagKeys(JSON.stringify(['x'.repeat(128)]))).toHaveLength(1);
  });

  const invalid = ['', 'x', '{}', '[]', '[1]', '[""]', JSON.stringify(['é'.repeat(65)]), JSON.stringify(Array.from({ length: 21 }, (_, i) => `k${i}`))];
  it.each(invalid)('rejects %j', (json) => {
    expect(() => parseTagKeys(json)).toThrow(
      expect.objectContaining({ code: 'InvalidParameter', message: expect.stringContaining('"TagKeys"') }),
    );
  });
});
