import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { p, parseParams, serviceInput } from '../../src/api/params.js';

describe('serviceInput: an action\'s parsed parameters as its use case\'s input', () => {
  const schema = z.object({ KeyId: p.string(2048), NumberOfBytes: p.integer(1, 1024).optional(), DryRun: p.boolean().optional() });

  it('lowercases the first letter of each name and keeps the parsed values', () => {
    const params = parseParams(schema, { KeyId: 'alias/a', NumberOfBytes: '32', DryRun: 'TRUE' });
    expect(serviceInput(params)).toStrictEqual({ keyId: 'alias/a', numberOfBytes: 32, dryRun: true });
  });

  it('leaves out what the caller left out, and what the schema does not list', () => {
    const params = parseParams(schema, { KeyId: 'k', Action: 'GenerateDataKey', Version: '2016-01-20' });
    expect(serviceInput(params)).toStrictEqual({ keyId: 'k' });
  });
});
