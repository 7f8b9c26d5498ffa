import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { gatherList, gatherRecords, withIndexed } from '../../src/api/indexed-params.js';
import { parseParams } from '../../src/api/params.js';
import { KmsError } from '../../src/domain/errors.js';

describe('gathering SDK-flattened arrays (alibaba-api.md §4.2)', () => {
  it('collects Name.N in numeric order, ignoring other parameters', () => {
    const raw = { 'ResourceId.10': 'j', 'ResourceId.2': 'b', 'ResourceId.1': 'a', ResourceId: 'plain', 'ResourceId.x': 'no', 'ResourceId.0': 'no', ResourceType: 'key' };
    expect(gatherList(raw, 'ResourceId')).toEqual(['a', 'b', 'j']);
    expect(gatherList(raw, 'TagKey')).toBeUndefined();
  });

  it('collects Name.N.Field groups, leaving absent fields out', () => {
    const raw = { 'Tag.2.Key': 'b', 'Tag.1.Key': 'a', 'Tag.1.Value': '1', 'Tag.3.Value': 'orphan', 'Tag.1.Other': 'ignored' };
    expect(gatherRecords(raw, 'Tag', ['Key', 'Value'])).toEqual([{ Key: 'a', Value: '1' }, { Key: 'b' }, { Value: 'orphan' }]);
  });

  it('does not treat a name as a regular expression', () => {
    expect(gatherList({ 'AxB.1': 'no', 'A.B.1': 'yes' }, 'A.B')).toEqual(['yes']);
  });

  it('feeds the schema `Name.N`, so errors and missing values name it', () => {
    const schema = withIndexed({ lists: ['ResourceId'], records: { Tag: ['Key', 'Value'] } }, z.object({
      'ResourceId.N': z.array(z.string().min(1)).min(1),
      'Tag.N': z.array(z.object({ Key: z.string(), Value: z.string().optional() })).optional(),
    }));
    expect(parseParams(schema, { 'ResourceId.1': 'k', 'Tag.1.Key': 'a' })).toEqual({ 'ResourceId.N': ['k'], 'Tag.N': [{ Key: 'a' }] });
    const missing = (() => {
      try {
        parseParams(schema, {});
      } catch (e) {
        return e as KmsError;
      }
    })();
    expect(missing?.code).toBe('MissingParameter');
    expect(missing?.message).toContain('"ResourceId.N"');
  });
});
